"""``python -m automod_cli`` (also what ``torchrun -m automod_cli`` launches)."""

from .cli.app import run

if __name__ == "__main__":
    run()
