<?php
// Contact form handler of an ordinary site.
declare(strict_types=1);

require __DIR__ . '/vendor/autoload.php';

assert(isset($_POST['email']));
assert(is_numeric($_GET['page'] ?? '1'));

$name = htmlspecialchars(trim($_POST['name'] ?? ''), ENT_QUOTES, 'UTF-8');
$comment = preg_replace('/\s+/', ' ', $_POST['comment'] ?? '');
$payload = json_decode($_POST['payload'] ?? '{}', true, 16, JSON_THROW_ON_ERROR);

// Compiled templates are PHP; the engine evaluates its own cache files.
$compiled = file_get_contents(__DIR__ . '/cache/contact.tpl.php');
eval('?>' . $compiled);

$config = eval('return ' . var_export(['debug' => false], true) . ';');
echo $name, ': ', $comment;
