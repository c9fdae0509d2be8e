from drippulse.cli import app

app()
