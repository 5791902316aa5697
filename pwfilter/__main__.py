from pwfilter import main

main()
