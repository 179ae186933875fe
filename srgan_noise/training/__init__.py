"""`srgan train`: patches and LR degradations, losses, regularisers and their
schedules, the monitor, checkpoints, torchrun, the training loop and the 2-D toy GAN."""
