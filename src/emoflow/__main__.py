from emoflow.cli import main

main()
