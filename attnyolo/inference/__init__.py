"""Inference without a deep-learning framework in the loop: the one preprocessor, the decoder, the
runtimes (Keras, ONNX Runtime, TFLite) behind one call, and the streaming detection loop.

Nothing here imports Keras, TensorFlow, JAX or PyTorch at import time: an exported model runs
with NumPy, OpenCV, Pillow and its runtime only. The Keras runtime imports Keras when it is made.
"""
