from guardcli.cli import main

main()
