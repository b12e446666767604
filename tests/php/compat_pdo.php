<?php
// PHP's PDO with the pgsql driver (libpq underneath), with its defaults: the compatibility
// scenario of compat/.
//
//   php compat_pdo.php
//
// Settings come from COMPAT_HOST, COMPAT_PORT, COMPAT_USER, COMPAT_PASSWORD, COMPAT_DATABASE,
// COMPAT_TENANT and COMPAT_SEED_ID (an entity of the tenant, used to provoke a duplicate key).
// Prints one JSON summary; on a failure prints the step, SQLSTATE and message and exits 1.

if (!extension_loaded('pdo_pgsql')) {
    fwrite(STDERR, "compat_pdo.php: pdo_pgsql is missing: run scripts/drivers-deps to install php-cli php-pgsql\n");
    exit(1);
}

$tenant = getenv('COMPAT_TENANT');

function step(string $name, callable $fn) {
    try {
        return $fn();
    } catch (Throwable $e) {
        $state = $e instanceof PDOException && is_array($e->errorInfo) ? ($e->errorInfo[0] ?? null) : null;
        fwrite(STDERR, "step $name failed: " . ($state ? "SQLSTATE $state: " : '') . get_class($e) . ': ' . $e->getMessage() . "\n");
        exit(1);
    }
}

function insert(PDO $db, string $name, ?string $id = null): void {
    global $tenant;
    if ($id === null) {
        $st = $db->prepare("INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES (?, 'compat', ?)");
        $st->execute([$tenant, "$tenant-$name"]);
    } else {
        $st = $db->prepare("INSERT INTO llmspell.entities (tenant_id, id, entity_type, name) VALUES (?, ?, 'compat', ?)");
        $st->execute([$tenant, $id, "$tenant-$name"]);
    }
}

$db = step('connect', function () {
    $dsn = sprintf('pgsql:host=%s;port=%s;dbname=%s', getenv('COMPAT_HOST'), getenv('COMPAT_PORT'), getenv('COMPAT_DATABASE'));
    return new PDO($dsn, getenv('COMPAT_USER'), getenv('COMPAT_PASSWORD'), [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
});
$summary = ['client' => 'PHP ' . PHP_VERSION . ' PDO pgsql (libpq ' . $db->getAttribute(PDO::ATTR_CLIENT_VERSION) . ')'];
$summary['tenant'] = step('tenant', fn () => $db->query('SHOW app.current_tenant_id')->fetchColumn());
// One prepared statement executed ten times: PDO prepares it on the server (pdo_stmt_N), and
// deallocates it when the statement object goes.
$summary['reads'] = step('reads', function () use ($db) {
    $st = $db->prepare('SELECT count(*) FROM llmspell.entities WHERE entity_type = ?');
    $reads = [];
    for ($i = 0; $i < 10; $i++) {
        $st->execute(['seed']);
        $reads[] = (int) $st->fetchColumn();
    }
    return $reads;
});
step('commit', function () use ($db) {
    $db->beginTransaction();
    insert($db, 'committed');
    $db->exec('SAVEPOINT s1');
    insert($db, 'savepoint');
    $db->exec('ROLLBACK TO SAVEPOINT s1');
    $db->commit();
});
step('rollback', function () use ($db) {
    $db->beginTransaction();
    $db->exec('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE');
    insert($db, 'rolledback');
    $db->rollBack();
});
step('error', function () use ($db, &$summary) {
    $db->beginTransaction();
    try {
        insert($db, 'failed');
        insert($db, 'duplicate', getenv('COMPAT_SEED_ID'));
        throw new RuntimeException('a duplicate key was accepted');
    } catch (PDOException $e) {
        $summary['error_code'] = $e->errorInfo[0];
        $db->rollBack();
    }
});
step('after', function () use ($db, &$summary) {
    $summary['tenant_after_error'] = $db->query('SHOW app.current_tenant_id')->fetchColumn();
    $summary['names'] = $db->query("SELECT name FROM llmspell.entities WHERE entity_type = 'compat' ORDER BY name")->fetchAll(PDO::FETCH_COLUMN);
    $summary['visible'] = $db->query('SELECT DISTINCT tenant_id FROM llmspell.entities ORDER BY 1')->fetchAll(PDO::FETCH_COLUMN);
});
step('close', function () use (&$db) {
    $db = null;
});
echo json_encode($summary), "\n";
