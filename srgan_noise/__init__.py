"""Image super-resolution with a GAN that trains stably (instance noise, Roth et al. regularisation).

The package is grouped by phase, so the folders show the architecture. Imports
run one way, from the command line down to the base (tests/test_layout.py):

    cli.py        the `srgan` commands: each fills one frozen config and calls one phase
    comparison/   `srgan compare`: stabilisation schedules trained side by side (SR and toy runs)
    evaluation/   `srgan eval` and `srgan plot`: scores, the critic test, reports and figures
    training/     `srgan train`: data, LR degradations, losses, regularisers, schedules, the loop
    inference/    `srgan upscale` and `srgan export`: tiled inference, image I/O, weights files
    models/       the networks: generators, discriminators, the VGG feature loss, the projection
    base/         what every phase takes: configs, errors, atomic writes, locks, images, measures

Comparison sits above evaluation and training because it runs both; training
sits above inference because it writes the weights files that inference reads.
"""

__version__ = "0.1.0"
