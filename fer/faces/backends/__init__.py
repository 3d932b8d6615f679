"""Detector backends, one small module each (see ``fer.faces.detectors._BACKENDS``)."""
