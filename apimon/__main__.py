from apimon.cli import main

main()
