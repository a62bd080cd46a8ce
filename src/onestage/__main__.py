from onestage.cli import main

main()
