from srgan_noise.cli import main

main()
