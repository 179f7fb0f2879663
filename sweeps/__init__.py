"""The named sweep specs of flaxmnist (TOML files), installed as package data."""
