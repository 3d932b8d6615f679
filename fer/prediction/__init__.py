"""Prediction: classify faces in images and video, the MLflow pyfunc, model resolution."""
