from townlet.cli import main

main()
