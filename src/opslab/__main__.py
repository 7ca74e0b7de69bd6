from opslab.cli import main

main()
