"""Data: shards, decoding, clip sampling, augmentation and the streaming loaders."""
