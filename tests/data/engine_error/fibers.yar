// A rule that makes libyara fail the scan (ERROR_TOO_MANY_RE_FIBERS,
// "internal error: 46") at once on "x" followed by a few thousand "ab":
// a real engine error, for on_error tests.
rule Vigild_Test_Engine_Error
{
    strings:
        $r = /x(a|b|ab|ba|aa|bb){1,60}(a|b|ab){1,60}y/
    condition:
        $r
}
