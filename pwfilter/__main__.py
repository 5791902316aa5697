from pwfilter.cli import main

main()
