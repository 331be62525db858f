"""medtransport's contrast dye (DCE-MRI / CT tracer kinetics) plugin.

Models (registered in :mod:`medtransport_contrast.plugin`): ``contrast.whole_body`` (an
injected agent from the syringe to the urine), ``contrast.dce`` (a tissue fed by an arterial
input, with its MRI or CT signal) and ``contrast.vessel_diffusion`` (the agent crossing a
capillary wall and spreading through the tissue). Library pieces: :mod:`.aif`,
:mod:`.kinetics` (vectorized forward models), :mod:`.fitting`, :mod:`.signal`, :mod:`.renal`.
"""

__version__ = "0.1.0"
