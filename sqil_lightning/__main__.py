from sqil_lightning.commands import main

main()
