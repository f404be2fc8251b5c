"""Video visits: SMART launch, patient join page and EHR write-back.

The services behind ``functions/launch.py`` and ``functions/writeback.py``.
"""
