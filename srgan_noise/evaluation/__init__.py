"""Judging a generator: PSNR/SSIM/high-band scores per image, the critic
two-sample test, the HTML report and the monitor plot."""
