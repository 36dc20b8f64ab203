// A rule that must fail to compile: its condition names an undefined string.
rule Broken_Rule
{
    strings:
        $a = "broken"
    condition: $b }
