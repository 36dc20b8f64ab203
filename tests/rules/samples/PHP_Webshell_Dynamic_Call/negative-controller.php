<?php
// Admin controller: request arrays are data, callbacks are our own.
$ids = array_filter($_POST['ids'] ?? []);
$ids = array_map('intval', $_GET['ids'] ?? []);
usort($rows, fn(array $a, array $b): int => $a['id'] <=> $b['id']);
array_walk($_POST['tags'], 'trim');

$handlers = [
    'list' => [$this, 'listItems'],
    'show' => [$this, 'showItem'],
];
$action = $_GET['action'] ?? 'list';
if (isset($handlers[$action])) {
    $result = call_user_func($handlers[$action], $_GET);
}
$handlers[$_GET['action']]($request);
