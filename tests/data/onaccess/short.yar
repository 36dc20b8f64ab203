// Test rule: the short marker at offset 0, in a file under 64 bytes. A
// longer file holding it is clean, so truncating one makes it malicious:
// the truncate test needs exactly that.
rule Vigild_Test_Short_Marker
{
    meta:
        description = "short marker file, for the truncate test"
        severity = "high"
    strings:
        $m = "VIGILD-SHORT-MARK"
    condition:
        $m at 0 and filesize < 64
}
