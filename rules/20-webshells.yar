/*
    20-webshells.yar: PHP and JSP web shells.

    What a web shell does is small and always the same: take a value from
    the HTTP request and hand it to something that runs code (eval, assert,
    a variable function, system(), Runtime.exec()) or writes files where
    the request says. These rules look for that hand-off written inline,
    which legitimate applications do not do, plus the obfuscation chains
    (eval of gzinflate of base64_decode of a literal) and the "server
    control panel" shape of larger shells (uname + disabled functions +
    file manager + command box in one page).

    Not covered: shells that only pass request data through several
    variables before it reaches eval (no YARA rule can follow data flow
    without also matching ordinary applications); encrypted payloads with
    no visible loader. The hash list and the miner/dropper rules are the
    other layers for those.

    Cost: every string has a literal atom of 4+ bytes (eval, exec,
    Runtime, _FILES, defineClass...); gaps are bounded ({0,8}, {0,160})
    and never cross a statement end where the shell idiom never does.

    Tuning: a false positive is almost always an application that really
    does eval request data (an old plugin, a "PHP console" tool). Fix the
    application or list its hash; do not widen the gaps below, which keep
    the regexes cheap and specific.

    This file must not match itself (admins, package managers and backups
    open it on a watched filesystem): examples in comments use placeholders
    such as REQ for a request superglobal, and the literal strings that
    would complete a match carry one \xNN escape ("<\x3fphp" is the PHP open tag).
    tests/rules checks this.
*/

rule PHP_Webshell_Eval_Request
{
    meta:
        description = "PHP code that evaluates request input: eval/assert/create_function/preg_replace /e on $_POST, $_GET, $_REQUEST, $_COOKIE or an HTTP header"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://www.php.net/manual/en/function.eval.php"
        author = "vigild"

    strings:
        // eval or @assert of REQ['x'], directly or through up to three
        // decoders (stripslashes, base64_decode...). Only decoders: assert
        // of isset(REQ['id']) is an ordinary check.
        $eval = /\b(eval|assert)[ \t]{0,8}\([ \t]{0,8}(@[ \t]{0,4})?((stripslashes|trim|urldecode|rawurldecode|base64_decode|str_rot13|gzinflate|gzuncompress|gzdecode|hex2bin|strrev|html_entity_decode)[ \t]{0,8}\([ \t]{0,8}(@[ \t]{0,4})?){0,3}\$_(POST|GET|REQUEST|COOKIE|SERVER\[[ \t]{0,4}['"]HTTP_)/ nocase
        $create = /\bcreate_function[ \t]{0,8}\([^;]{0,80}\$_(POST|GET|REQUEST|COOKIE)\b/ nocase
        // The /e modifier makes the replacement PHP code (removed in PHP 7,
        // still planted on old hosts).
        $preg_e = /\bpreg_replace[ \t]{0,8}\([ \t]{0,8}['"][^'"\n]{1,80}\/[imsxu]{0,5}e[imsxu]{0,5}['"][ \t]{0,8},[ \t]{0,8}(@[ \t]{0,4})?\$_(POST|GET|REQUEST|COOKIE)\b/ nocase

    condition:
        any of them
}

rule PHP_Webshell_Obfuscated_Eval
{
    meta:
        description = "PHP eval/assert of a decoding chain (gzinflate, base64_decode, str_rot13...) or of a long base64 literal, or a hidden base64_decode name"
        severity = "high"
        date = "2026-11-22"
        reference = "https://www.php.net/manual/en/function.gzinflate.php"
        author = "vigild"

    strings:
        // Two decoders nested inside eval: eval of gzinflate of base64_decode.
        $chain = /\b(eval|assert)[ \t]{0,8}\([ \t]{0,8}(@[ \t]{0,4})?(gzinflate|gzuncompress|gzdecode|str_rot13|strrev|base64_decode|convert_uudecode|hex2bin|rawurldecode)[ \t]{0,8}\([ \t]{0,8}(@[ \t]{0,4})?(gzinflate|gzuncompress|gzdecode|str_rot13|strrev|base64_decode|convert_uudecode|hex2bin|rawurldecode)[ \t]{0,8}\(/ nocase
        // One decoder, but over a literal of 200+ base64 characters: a
        // packed payload, not configuration.
        $b64lit = /\b(eval|assert)[ \t]{0,8}\([ \t]{0,8}(@[ \t]{0,4})?base64_decode[ \t]{0,8}\([ \t]{0,8}['"][A-Za-z0-9+\/]{200}/ nocase
        // base64_decode spelled so that a plain-text search misses it:
        // reversed, ROT13, or as \x escapes inside a PHP string.
        $name_rev = "edoced\x5f46esab" nocase
        $name_rot = "onfr64\x5fqrpbqr" nocase
        $name_hex = "\\x62\\x61\\x73\\x65\\x36\\x34\\x5f" nocase
        $call = /\b(eval|assert|create_function)[ \t]{0,8}\(/ nocase

    condition:
        $chain or $b64lit or ($call and any of ($name_*))
}

rule PHP_Webshell_Exec_Request
{
    meta:
        description = "PHP that passes request input straight to a shell: system, exec, passthru, shell_exec, popen, proc_open or backticks around a request superglobal"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://www.php.net/manual/en/ref.exec.php"
        author = "vigild"

    strings:
        // \b keeps filesystem() and curl_exec() out.
        $call = /\b(system|shell_exec|passthru|exec|popen|proc_open|pcntl_exec)[ \t]{0,8}\([ \t]{0,8}(@[ \t]{0,4})?((stripslashes|trim|urldecode|rawurldecode|base64_decode|escapeshellcmd|str_rot13)[ \t]{0,8}\([ \t]{0,8}){0,2}\$_(POST|GET|REQUEST|COOKIE|SERVER\[[ \t]{0,4}['"]HTTP_)/ nocase
        // A short echo tag around backticks of REQ[c]: the shortest PHP
        // shell there is.
        $tick = /`[ \t]{0,4}\$_(POST|GET|REQUEST|COOKIE)\[/

    condition:
        any of them
}

rule PHP_Webshell_Dynamic_Call
{
    meta:
        description = "PHP that calls a function named by the request: a request value called as a function, or given as the callback of call_user_func, array_map, array_filter..."
        severity = "critical"
        date = "2026-11-22"
        reference = "https://www.php.net/manual/en/functions.variable-functions.php"
        author = "vigild"

    strings:
        $var_call = /\$_(POST|GET|REQUEST|COOKIE)\[[^\]\n]{1,40}\][ \t]{0,4}\([ \t]{0,4}(@[ \t]{0,4})?\$_(POST|GET|REQUEST|COOKIE|SERVER)\[/
        // Callback in first position: the request picks the function.
        $cb_first = /\b(call_user_func|call_user_func_array|array_map|register_shutdown_function|register_tick_function|forward_static_call)[ \t]{0,8}\([ \t]{0,8}(@[ \t]{0,4})?\$_(POST|GET|REQUEST|COOKIE)\[/ nocase
        // Callback in second position: array_filter over any array, with
        // REQ['f'] as the callback.
        // A request array in the *first* position is ordinary code.
        $cb_second = /\b(array_filter|array_walk|array_reduce|usort|uasort|uksort)[ \t]{0,8}\([^,;)\n]{1,80},[ \t]{0,8}(@[ \t]{0,4})?\$_(POST|GET|REQUEST|COOKIE)\[/ nocase

    condition:
        any of them
}

rule PHP_Webshell_Uploader
{
    meta:
        description = "PHP uploader that stores an upload under the name or path the client chose, with no directory of its own"
        severity = "high"
        date = "2026-11-22"
        reference = "https://www.php.net/manual/en/function.move-uploaded-file.php"
        author = "vigild"

    strings:
        // The upload's tmp_name moved to the client's own file name, or to
        // a destination taken from REQ. Real upload handlers build the
        // destination from their own directory first ($dir . ...).
        $store = /\b(move_uploaded_file|copy)[ \t]{0,8}\([ \t]{0,8}\$_FILES\[[^\]\n]{1,40}\][ \t]{0,4}\[[ \t]{0,4}['"]tmp_name['"][ \t]{0,4}\][ \t]{0,8},[ \t]{0,8}(\$_FILES\[[^\]\n]{1,40}\][ \t]{0,4}\[[ \t]{0,4}['"]name['"]|\$_(POST|GET|REQUEST)\[)/ nocase

    condition:
        $store
}

rule PHP_Webshell_File_Manager
{
    meta:
        description = "PHP 'server control panel' shell: system recon, file manager and command execution in one request-driven page"
        severity = "high"
        date = "2026-11-22"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        author = "vigild"

    strings:
        $php_open = "<\x3fphp" nocase
        $php_echo = "<\x3f="

        // Function names in lower case only: PHP would accept any case, but
        // these panels are not hand-obfuscated, and 20 nocase strings would
        // cost every scan of every file more than the rest of this file.

        // Recon that shells print in their header bar.
        $recon_uname = "php_uname("
        $recon_disabled = "disable_functions"
        $recon_pwuid = "posix_getpwuid("
        $recon_safe = "safe_mode"
        $recon_basedir = "open_basedir"
        $recon_uid = "getmyuid("

        // File manager verbs.
        $fm_upload = "move_uploaded_file("
        $fm_scandir = "scandir("
        $fm_opendir = "opendir("
        $fm_perms = "fileperms("
        $fm_unlink = "unlink("
        $fm_rmdir = "rmdir("
        $fm_chmod = "chmod("
        $fm_put = "file_put_contents("

        // Command box.
        $cmd_shell_exec = "shell_exec("
        $cmd_passthru = "passthru("
        $cmd_proc_open = "proc_open("
        $cmd_popen = "popen("
        $cmd_system = /\bsystem[ \t]{0,4}\(/ nocase

        $req_post = "$_POST["
        $req_get = "$_GET["
        $req_request = "$_REQUEST["

    condition:
        filesize < 2MB and any of ($php_*) and 2 of ($recon_*) and 4 of ($fm_*) and
        any of ($cmd_*) and any of ($req_*)
}

rule JSP_Webshell_Exec_Request
{
    meta:
        description = "JSP that runs a request parameter as a command (Runtime exec or ProcessBuilder of a getParameter value), inline or through one variable"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://docs.oracle.com/javase/8/docs/api/java/lang/Runtime.html"
        author = "vigild"

    strings:
        // Inline: the parameter is read inside the exec() call itself,
        // also as the last element of a String[] of /bin/sh and -c.
        $rt_inline = /Runtime\.getRuntime\(\)\.exec\([^;]{0,160}request\.getParameter\(/
        $pb_inline = /new[ \t]{1,4}ProcessBuilder\([^;]{0,160}request\.getParameter\(/

        // Through a variable: a JSP scriptlet page that reads a parameter,
        // runs a process and copies its output into the response.
        $jsp_directive = "<%\x40"
        $jsp_expr = "<%\x3d"
        $jsp_open_sp = "<%\x20"
        $jsp_open_nl = "<%\n"
        $jsp_open_crlf = "<%\r\n"
        $param = "request.getParameter("
        $exec_rt = "Runtime.getRuntime().exec("
        $exec_pb = "ProcessBuilder("
        $output = ".getInputStream()"

    condition:
        filesize < 1MB and
        ($rt_inline or $pb_inline or
         (any of ($jsp_*) and $param and any of ($exec_*) and $output))
}

rule JSP_Webshell_Class_Loader
{
    meta:
        description = "JSP that defines Java classes from decrypted request bytes (Behinder/Godzilla-style encrypted shells)"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        author = "vigild"

    strings:
        $jsp_directive = "<%\x40"
        $jsp_open_sp = "<%\x20"
        $jsp_open_nl = "<%\n"
        $jsp_open_crlf = "<%\r\n"
        $jsp_page = "<%\x21"

        // A page has no business defining classes; these shells either
        // subclass ClassLoader or reach defineClass by reflection.
        $define = "defineClass"
        $cipher = "Cipher.getInstance("
        $b64_sun = "BASE64Decoder"
        $b64_util = "Base64.getDecoder()"
        $b64_codec = "Base64.decodeBase64("
        $req_reader = "request.getReader()"
        $req_stream = "request.getInputStream()"
        $req_param = "request.getParameter("

    condition:
        filesize < 512KB and any of ($jsp_*) and $define and $cipher and
        any of ($b64_*) and any of ($req_*)
}

rule JSP_Webshell_File_Manager
{
    meta:
        description = "JSP file manager shell: lists, writes and deletes files where the request says and runs commands"
        severity = "high"
        date = "2026-11-22"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        author = "vigild"

    strings:
        $jsp_directive = "<%\x40"
        $jsp_open_sp = "<%\x20"
        $jsp_open_nl = "<%\n"
        $jsp_open_crlf = "<%\r\n"

        $param = "request.getParameter("
        $list = ".listFiles()"
        $write = "new FileOutputStream("
        $exec_rt = "Runtime.getRuntime().exec("
        $exec_pb = "ProcessBuilder("

        $extra_delete = ".delete()"
        $extra_upload = "multipart/form-data" nocase
        $extra_os = "getProperty(\"os.name\")"
        $extra_roots = "File.listRoots()"

    condition:
        filesize < 1MB and any of ($jsp_*) and $param and $list and $write and
        any of ($exec_*) and any of ($extra_*)
}
