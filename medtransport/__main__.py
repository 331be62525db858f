"""``python -m medtransport``: the ``medtransport`` command."""

from medtransport.cli import main

if __name__ == "__main__":
    main(prog_name="medtransport")
