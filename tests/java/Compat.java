// pgJDBC through HikariCP, both with their defaults: the compatibility scenario of compat/.
//
//   java -cp postgresql.jar:HikariCP.jar:slf4j-api.jar:slf4j-simple.jar Compat.java
//
// Settings come from COMPAT_HOST, COMPAT_PORT, COMPAT_USER, COMPAT_PASSWORD, COMPAT_DATABASE,
// COMPAT_TENANT and COMPAT_SEED_ID (an entity of the tenant, used to provoke a duplicate key).
// Prints one JSON summary; on a failure prints the step, SQLSTATE and message and exits 1.
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;

public class Compat {
    interface Step<T> {
        T run() throws Exception;
    }

    static final String INSERT =
            "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES (?, 'compat', ?)";

    static String tenant = env("COMPAT_TENANT");

    public static void main(String[] args) {
        HikariConfig cfg = new HikariConfig();
        cfg.setJdbcUrl("jdbc:postgresql://" + env("COMPAT_HOST") + ":" + env("COMPAT_PORT") + "/"
                + env("COMPAT_DATABASE"));
        cfg.setUsername(env("COMPAT_USER"));
        cfg.setPassword(env("COMPAT_PASSWORD"));
        HikariDataSource pool = step("connect", () -> new HikariDataSource(cfg));

        String shown = step("tenant", () -> {
            try (Connection c = pool.getConnection()) {
                return strings(c, "SHOW app.current_tenant_id").get(0);
            }
        });

        // One connection, ten executions: pgJDBC prepares on the server from the fifth.
        List<String> reads = step("reads", () -> {
            List<String> counts = new ArrayList<>();
            try (Connection c = pool.getConnection()) {
                for (int i = 0; i < 10; i++) {
                    counts.add(strings(c, "SELECT count(*) FROM llmspell.entities WHERE entity_type = ?", "seed").get(0));
                }
            }
            return counts;
        });

        step("commit", () -> {
            try (Connection c = pool.getConnection()) {
                c.setAutoCommit(false);
                insert(c, tenant + "-committed");
                Savepoint sp = c.setSavepoint();
                insert(c, tenant + "-savepoint");
                c.rollback(sp);
                c.commit();
            }
            return null;
        });

        step("rollback", () -> {
            try (Connection c = pool.getConnection()) {
                c.setAutoCommit(false);
                c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
                insert(c, tenant + "-rolledback");
                c.rollback();
            }
            return null;
        });

        String errorCode = step("error", () -> {
            try (Connection c = pool.getConnection()) {
                c.setAutoCommit(false);
                insert(c, tenant + "-failed");
                try (PreparedStatement ps = c.prepareStatement(
                        "INSERT INTO llmspell.entities (tenant_id, id, entity_type, name) VALUES (?, ?, 'compat', ?)")) {
                    ps.setString(1, tenant);
                    ps.setObject(2, UUID.fromString(env("COMPAT_SEED_ID")));
                    ps.setString(3, tenant + "-duplicate");
                    ps.executeUpdate();
                } catch (SQLException e) {
                    c.rollback();
                    return e.getSQLState();
                }
                throw new IllegalStateException("a duplicate key was accepted");
            }
        });

        String[] after = new String[1];
        List<List<String>> seen = step("after", () -> {
            try (Connection c = pool.getConnection()) {
                after[0] = strings(c, "SHOW app.current_tenant_id").get(0);
                return List.of(
                        strings(c, "SELECT name FROM llmspell.entities WHERE entity_type = ? ORDER BY name", "compat"),
                        strings(c, "SELECT DISTINCT tenant_id FROM llmspell.entities ORDER BY 1"));
            }
        });
        step("close", () -> {
            pool.close();
            return null;
        });

        String client = "pgJDBC " + org.postgresql.util.DriverInfo.DRIVER_VERSION + " with HikariCP";
        System.out.println("{\"client\": " + quote(client)
                + ", \"tenant\": " + quote(shown)
                + ", \"reads\": " + numbers(reads)
                + ", \"error_code\": " + quote(errorCode)
                + ", \"tenant_after_error\": " + quote(after[0])
                + ", \"names\": " + texts(seen.get(0))
                + ", \"visible\": " + texts(seen.get(1)) + "}");
    }

    static void insert(Connection c, String name) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(INSERT)) {
            ps.setString(1, tenant);
            ps.setString(2, name);
            ps.executeUpdate();
        }
    }

    // strings runs a query whose rows are one column each and returns them as text.
    static List<String> strings(Connection c, String sql, String... args) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) {
                ps.setString(i + 1, args[i]);
            }
            List<String> out = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    out.add(rs.getString(1));
                }
            }
            return out;
        }
    }

    static <T> T step(String name, Step<T> s) {
        try {
            return s.run();
        } catch (Exception e) {
            String state = e instanceof SQLException ? ((SQLException) e).getSQLState() : null;
            System.err.println("step " + name + " failed: " + (state == null ? "" : "SQLSTATE " + state + ": ") + e);
            System.exit(1);
            return null;
        }
    }

    static String env(String name) {
        String v = System.getenv(name);
        if (v == null) {
            throw new IllegalArgumentException(name + " is not set");
        }
        return v;
    }

    static String quote(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') {
                b.append('\\').append(ch);
            } else if (ch < 0x20) {
                b.append(String.format("\\u%04x", (int) ch));
            } else {
                b.append(ch);
            }
        }
        return b.append('"').toString();
    }

    static String texts(List<String> list) {
        List<String> quoted = new ArrayList<>();
        for (String s : list) {
            quoted.add(quote(s));
        }
        return "[" + String.join(", ", quoted) + "]";
    }

    static String numbers(List<String> list) {
        return "[" + String.join(", ", list) + "]";
    }
}
