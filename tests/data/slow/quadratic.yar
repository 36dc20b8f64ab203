// A real, deliberately costly rule: a loop inside a loop over every byte,
// quadratic in the file size. On a file of a few hundred KB it runs far
// past any per-file timeout; tests use it to make scans slow for real.
rule Vigild_Test_Quadratic
{
    meta:
        description = "quadratic loop, for timeout and deadline tests"
        severity = "low"
    condition:
        filesize > 1024 and
        for any i in (0..filesize - 1) : (
            for any j in (0..filesize - 1) : (
                uint8(i) == 0xA5 and uint8(j) == 0x5A and i == j
            )
        )
}
