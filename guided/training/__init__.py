"""Training: datasets and the on-device loader, recipes, the training engine (one run, or seeds of one
architecture together), its hooks (sparsity penalties, fixed masks) and retraining of pruned models (fine-
tuning, Scratch-E/B, lottery tickets).
"""
