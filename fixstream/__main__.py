from fixstream.cli import main

main()
