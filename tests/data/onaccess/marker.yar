// Test rule: matches the marker string the tests plant in files.
rule Vigild_Test_Marker
{
    meta:
        description = "test marker for vigild's own tests"
        severity = "high"
    strings:
        $marker = "VIGILD-TEST-MARKER-7f3a"
    condition:
        $marker
}
