from music_rm.commands import main

main(prog_name="music-rm")
