from sqil_lightning.cli import main

main()
