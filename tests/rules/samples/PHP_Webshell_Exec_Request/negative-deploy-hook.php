<?php
// Deployment web hook: runs fixed commands, never request text.
$secret = getenv('DEPLOY_SECRET');
$given = $_SERVER['HTTP_X_HUB_SIGNATURE_256'] ?? '';
$body = file_get_contents('php://input');
if (!hash_equals('sha256=' . hash_hmac('sha256', $body, $secret), $given)) {
    http_response_code(403);
    exit;
}

exec('git -C /srv/app rev-parse HEAD', $before);
system('git -C /srv/app pull --ff-only 2>&1');
$branch = escapeshellarg($_POST['branch'] ?? 'main');
$out = shell_exec('git -C /srv/app log -1 --format=%H ' . $branch);

$ch = curl_init('https://chat.example.org/hooks/deploy');
curl_setopt($ch, CURLOPT_POSTFIELDS, json_encode(['from' => $before[0], 'to' => trim($out)]));
curl_exec($ch);

$fs = new \League\Flysystem\Filesystem($adapter);
echo filesystem($fs) ? 'ok' : 'failed';
