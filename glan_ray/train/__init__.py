"""Supervised models on Ray Train (TorchTrainer) and Ray Tune: L-RTG, HRM, KLAN-ISP, KLAN-AM."""
