from ml_platform.cli import run

run()
