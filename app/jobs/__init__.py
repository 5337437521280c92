"""Background jobs wired into the window: training, review, export, live view.

The GUI never trains or exports in its own process: it runs `python -m core <verb>` as a
QProcess and turns the JSON-lines events into progress, plots and notifications.
"""
