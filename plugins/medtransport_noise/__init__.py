"""medtransport's generative noise plugin: the DDPM forward process on medical data, with its
variance budget as the ledger, and the exact reverse process for Gaussian-mixture data.

Models: ``noise.forward`` (:mod:`~medtransport_noise.forward`) and ``noise.reverse``
(:mod:`~medtransport_noise.reverse_model`). Pieces: :mod:`~medtransport_noise.schedules`
(diffusers' β schedules, zero-terminal-SNR rescaling, the VP-SDE view),
:mod:`~medtransport_noise.normal` (fast seeded normals and the fused closed-form noising),
:mod:`~medtransport_noise.reverse` (exact denoiser, DDPM/DDIM/probability-flow samplers and
their exact affine moment recursion), :mod:`~medtransport_noise.inputs` and
:mod:`~medtransport_noise.phantom` (what is noised), :mod:`~medtransport_noise.audits`.
"""

__version__ = "0.1.0"
