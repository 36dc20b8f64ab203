<?php
// Page cache: entries are stored compressed and base64-encoded in Redis.
final class PageCache
{
    public function __construct(private \Redis $redis) {}

    public function get(string $key): ?string
    {
        $raw = $this->redis->get('page:' . $key);
        if ($raw === false) {
            return null;
        }
        return gzinflate(base64_decode($raw, true));
    }

    public function put(string $key, string $html): void
    {
        $this->redis->setex('page:' . $key, 300, base64_encode(gzdeflate($html, 6)));
    }

    public function config(): array
    {
        // The config file returns an array; eval of our own export is safe.
        return eval('return ' . file_get_contents(__DIR__ . '/config.export') . ';');
    }
}
