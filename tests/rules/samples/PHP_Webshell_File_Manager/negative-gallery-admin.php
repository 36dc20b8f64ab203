<?php
// Photo gallery admin page: upload, list, delete - no shell.
require __DIR__ . '/auth.php';
$dir = __DIR__ . '/photos';
?>
<footer>Server: <?php echo htmlspecialchars(php_uname('s') . ' ' . php_uname('r')); ?>,
upload limit <?php echo ini_get('upload_max_filesize'); ?>,
disabled: <?php echo ini_get('disable_functions') ?: 'none'; ?></footer>
<?php
if (!empty($_FILES['photo'])) {
    move_uploaded_file($_FILES['photo']['tmp_name'], $dir . '/' . bin2hex(random_bytes(8)) . '.jpg');
}
if (isset($_POST['delete']) && preg_match('/^[0-9a-f]{16}\.jpg$/', $_POST['delete'])) {
    unlink($dir . '/' . $_POST['delete']);
}
foreach (scandir($dir) as $f) {
    if ($f[0] === '.') continue;
    printf('<li>%s (%o)</li>', htmlspecialchars($f), fileperms("$dir/$f") & 0777);
}
$thumbs = $dir . '/.thumbs';
is_dir($thumbs) || mkdir($thumbs);
chmod($thumbs, 0750);
echo $_GET['page'] ?? '';
