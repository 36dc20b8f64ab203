/*
    10-eicar.yar: the EICAR anti-malware test file.

    Admins drop EICAR on a watched path to prove that vigild blocks, alerts
    and quarantines end to end, so it must be detected in every form they
    are likely to try:

      1. the plain 68-byte file;
      2. the file followed by trailing whitespace, up to 128 bytes in all
         (space, tab, CR, LF and Ctrl-Z, the only fillers EICAR's own
         specification allows);
      3. the 68-byte string anywhere inside a larger file (a 1 MB blob, an
         archive member stored uncompressed, a mail body).

    Forms 1 and 2 are the test file as EICAR defines it: EICAR_Test_File.
    Form 3 is outside that definition (strict scanners ignore it) and is
    reported as EICAR_Test_String_Embedded, so a report says which of the
    two was seen. The rules exclude each other: a file gets one name.

    The string is written in hex so that this rules file does not itself
    look like the test file to other scanners on the same machine.

    Tuning: to follow EICAR's definition strictly, delete
    EICAR_Test_String_Embedded. Nothing else depends on it.
*/

rule EICAR_Test_File
{
    meta:
        description = "EICAR anti-malware test file: the 68-byte string at offset 0, optionally followed by whitespace, at most 128 bytes in all"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://www.eicar.org/download-anti-malware-testfile/"
        author = "vigild"
        detects = "plain file; file with trailing whitespace (<= 128 bytes total)"

    strings:
        // Hex on purpose (see above); YARA-X would suggest a text literal.
        // suppress: text_as_hex
        $eicar = { 58 35 4F 21 50 25 40 41 50 5B 34 5C 50 5A 58 35 34 28 50 5E 29 37 43 43
                   29 37 7D 24 45 49 43 41 52 2D 53 54 41 4E 44 41 52 44 2D 41 4E 54 49 56
                   49 52 55 53 2D 54 45 53 54 2D 46 49 4C 45 21 24 48 2B 48 2A }

    condition:
        // Cheapest tests first: the size bound also bounds the loop below
        // to at most 60 iterations, whatever YARA-X's range check thinks.
        filesize >= 68 and filesize <= 128 and $eicar at 0 and
        (
            filesize == 68 or
            // suppress: potentially_slow_loop
            for all i in (68 .. filesize - 1) : (
                uint8(i) == 0x20 or uint8(i) == 0x09 or uint8(i) == 0x0A or
                uint8(i) == 0x0D or uint8(i) == 0x1A
            )
        )
}

rule EICAR_Test_String_Embedded
{
    meta:
        description = "EICAR test string embedded in a larger file (outside EICAR's own definition; see rule file)"
        severity = "high"
        date = "2026-11-22"
        reference = "https://www.eicar.org/download-anti-malware-testfile/"
        author = "vigild"
        detects = "the 68-byte string anywhere in a file that is not itself the EICAR test file"

    strings:
        // Hex on purpose (see above); YARA-X would suggest a text literal.
        // suppress: text_as_hex
        $eicar = { 58 35 4F 21 50 25 40 41 50 5B 34 5C 50 5A 58 35 34 28 50 5E 29 37 43 43
                   29 37 7D 24 45 49 43 41 52 2D 53 54 41 4E 44 41 52 44 2D 41 4E 54 49 56
                   49 52 55 53 2D 54 45 53 54 2D 46 49 4C 45 21 24 48 2B 48 2A }

    condition:
        $eicar and not EICAR_Test_File
}
