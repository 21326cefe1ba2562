// pgjdbc through pgsluice with read/write splitting (tests/it/split_drivers.rs),
// run as a single-file program:
//   java -cp /usr/share/java/postgresql.jar JdbcSplit.java
//
// prepareThreshold=1: every PreparedStatement is a named server-side
// statement from its first execution. Reads in autocommit must come from a
// standby, writes and transactions from the primary, and with
// read_your_writes a read right after a write sees it. Exits non-zero on
// any wrong result.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;

public class JdbcSplit {
    static final String URL = System.getenv("PGSLUICE_JDBC_URL");
    static final int CLIENTS = Integer.parseInt(System.getenv().getOrDefault("CLIENTS", "8"));
    static final int ROUNDS = Integer.parseInt(System.getenv().getOrDefault("ROUNDS", "20"));

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static void worker(int i) throws SQLException {
        String url = URL + (URL.contains("?") ? "&" : "?") + "prepareThreshold=1";
        try (Connection c = DriverManager.getConnection(url);
             PreparedStatement read = c.prepareStatement("SELECT pg_is_in_recovery(), ?::int");
             PreparedStatement write = c.prepareStatement(
                 "INSERT INTO split_t VALUES (?, ?) RETURNING pg_is_in_recovery()");
             PreparedStatement seen = c.prepareStatement(
                 "SELECT count(*) FROM split_t WHERE client = ? AND n = ?")) {
            // Reads first: no write of this client yet, so a standby's.
            for (int r = 0; r < ROUNDS; r++) {
                read.setInt(1, r);
                try (ResultSet rs = read.executeQuery()) {
                    check(rs.next() && rs.getBoolean(1) && rs.getInt(2) == r, "read on a standby " + r);
                }
            }
            // Then writes: each read after one sees it (read_your_writes).
            for (int r = 0; r < ROUNDS; r++) {
                write.setInt(1, i);
                write.setInt(2, r);
                try (ResultSet rs = write.executeQuery()) {
                    check(rs.next() && !rs.getBoolean(1), "write on the primary " + r);
                }
                seen.setInt(1, i);
                seen.setInt(2, r);
                try (ResultSet rs = seen.executeQuery()) {
                    check(rs.next() && rs.getLong(1) == 1, "own write seen " + r);
                }
                c.setAutoCommit(false);
                try (ResultSet rs = c.createStatement().executeQuery("SELECT pg_is_in_recovery()")) {
                    check(rs.next() && !rs.getBoolean(1), "transaction on the primary " + r);
                }
                c.commit();
                c.setAutoCommit(true);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < CLIENTS; i++) {
            final int id = i;
            Thread t = new Thread(() -> {
                try {
                    worker(id);
                } catch (Throwable e) {
                    errors.add(e);
                }
            });
            t.start();
            threads.add(t);
        }
        for (Thread t : threads) t.join();
        if (!errors.isEmpty()) {
            errors.peek().printStackTrace();
            System.exit(1);
        }
        System.out.println("pgjdbc split: " + CLIENTS + " clients x " + ROUNDS + " rounds ok");
    }
}
