<?php
// Avatar upload: the server chooses directory and name.
$uploadDir = __DIR__ . '/../var/avatars';
$finfo = new finfo(FILEINFO_MIME_TYPE);
if ($finfo->file($_FILES['avatar']['tmp_name']) !== 'image/png') {
    http_response_code(415);
    exit;
}
$target = $uploadDir . '/' . bin2hex(random_bytes(16)) . '.png';
move_uploaded_file($_FILES['avatar']['tmp_name'], $target);

// The tutorial version, still under a fixed directory.
move_uploaded_file($_FILES["file"]["tmp_name"], "uploads/" . basename($_FILES["file"]["name"]));
