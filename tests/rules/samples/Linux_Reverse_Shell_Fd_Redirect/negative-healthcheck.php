<?php
// Health check: is the database port open, and what does uptime say?
$fp = @fsockopen('db.example.com', 5432, $errno, $errstr, 2);
$db = $fp !== false;
if ($fp) {
    fclose($fp);
}
$uptime = shell_exec('/bin/sh -c uptime 2>&1');
header('Content-Type: application/json');
echo json_encode(['db' => $db, 'uptime' => trim((string) $uptime)]);
