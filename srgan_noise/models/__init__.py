"""The networks: SRResNet and sub-pixel generators, the discriminators, the
VGG54 feature loss (weights from a user's path) and the affine projection."""
