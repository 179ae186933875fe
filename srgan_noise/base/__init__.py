"""What every phase may take: the architecture config, the one-line error, atomic
writes, run locks, image listing and reading, devices and the image measures."""
