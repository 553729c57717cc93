"""Reading and writing files: images, model files, reference checkpoints; all writes are atomic."""
