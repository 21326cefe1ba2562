// pgjdbc (PostgreSQL JDBC) through pgsluice in transaction mode
// (tests/it/driver_scripts.rs), run as a single-file program:
//   java -cp /usr/share/java/postgresql.jar JdbcCheck.java
//
// prepareThreshold=1 makes pgjdbc switch every PreparedStatement to a named
// server-side statement (S_1, S_2, ...) on its first execution, so with more
// connections than server connections each statement must follow its
// client to other servers. Also: transactions, batches (pipelined
// Bind/Execute), an error then the same statements again, COPY in and out.
// Exits non-zero on any wrong result.

import java.io.ByteArrayOutputStream;
import java.io.StringReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;

import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class JdbcCheck {
    static final String URL = System.getenv("PGSLUICE_JDBC_URL");
    static final int CLIENTS = Integer.parseInt(System.getenv().getOrDefault("CLIENTS", "20"));
    static final int ROUNDS = Integer.parseInt(System.getenv().getOrDefault("ROUNDS", "40"));

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static Connection connect() throws SQLException {
        return DriverManager.getConnection(URL + (URL.contains("?") ? "&" : "?") + "prepareThreshold=1");
    }

    static void worker(int i) throws Exception {
        try (Connection c = connect();
             PreparedStatement dbl = c.prepareStatement("SELECT ?::int8 * 2, ?::text");
             PreparedStatement ins = c.prepareStatement("INSERT INTO items (client, n, label) VALUES (?, ?, ?)");
             PreparedStatement cnt = c.prepareStatement("SELECT count(*) FROM items WHERE client = ?")) {
            for (int r = 0; r < ROUNDS; r++) {
                dbl.setLong(1, r);
                dbl.setString(2, "c" + i);
                try (ResultSet rs = dbl.executeQuery()) {
                    check(rs.next() && rs.getLong(1) == 2L * r && rs.getString(2).equals("c" + i), "double " + r);
                }
                c.setAutoCommit(false);
                ins.setInt(1, i);
                ins.setInt(2, r);
                ins.setString(3, "c" + i + " r" + r + " \u00e9");
                check(ins.executeUpdate() == 1, "insert");
                cnt.setInt(1, i);
                try (ResultSet rs = cnt.executeQuery()) {
                    check(rs.next() && rs.getLong(1) == r + 1, "count in transaction " + r);
                }
                c.commit();
                c.setAutoCommit(true);
            }

            // A batch: one statement, many Bind/Execute in one round trip.
            try (PreparedStatement many = c.prepareStatement("INSERT INTO many (client, k) VALUES (?, ?)")) {
                for (int k = 0; k < 200; k++) {
                    many.setInt(1, i);
                    many.setInt(2, k);
                    many.addBatch();
                }
                int[] done = many.executeBatch();
                check(done.length == 200, "batch size");
            }
            try (PreparedStatement sum = c.prepareStatement("SELECT count(*), sum(k) FROM many WHERE client = ?")) {
                sum.setInt(1, i);
                try (ResultSet rs = sum.executeQuery()) {
                    check(rs.next() && rs.getLong(1) == 200 && rs.getLong(2) == 19900, "batch rows");
                }
            }

            // An error, then the same named statements again.
            try (PreparedStatement div = c.prepareStatement("SELECT 1 / ?::int")) {
                div.setInt(1, 0);
                try {
                    div.executeQuery().close();
                    throw new AssertionError("no division_by_zero");
                } catch (SQLException e) {
                    check("22012".equals(e.getSQLState()), "sqlstate " + e.getSQLState());
                }
                div.setInt(1, 1);
                try (ResultSet rs = div.executeQuery()) {
                    check(rs.next() && rs.getInt(1) == 1, "after error");
                }
            }

            // COPY in and out.
            CopyManager copy = c.unwrap(PGConnection.class).getCopyAPI();
            StringBuilder rows = new StringBuilder();
            for (int k = 0; k < 2000; k++) rows.append(i).append('\t').append(k).append("\trow ").append(k).append('\n');
            long in = copy.copyIn("COPY copied (client, k, t) FROM STDIN", new StringReader(rows.toString()));
            check(in == 2000, "copy in " + in);
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            long outRows = copy.copyOut("COPY (SELECT k, t FROM copied WHERE client = " + i + " ORDER BY k) TO STDOUT", out);
            String[] lines = out.toString("UTF-8").split("\n");
            check(outRows == 2000 && lines.length == 2000 && lines[1999].equals("1999\trow 1999"), "copy out");

            dbl.setLong(1, 21);
            dbl.setString(2, "end");
            try (ResultSet rs = dbl.executeQuery()) {
                check(rs.next() && rs.getLong(1) == 42 && rs.getString(2).equals("end"), "end");
            }
        }
    }

    public static void main(String[] args) throws Exception {
        try (Connection c = connect(); Statement s = c.createStatement()) {
            s.execute("CREATE TABLE items (client int, n int, label text)");
            s.execute("CREATE TABLE many (client int, k int)");
            s.execute("CREATE TABLE copied (client int, k int, t text)");
        }
        ConcurrentLinkedQueue<String> failures = new ConcurrentLinkedQueue<>();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < CLIENTS; i++) {
            final int id = i;
            Thread t = new Thread(() -> {
                try {
                    worker(id);
                } catch (Throwable e) {
                    failures.add("client " + id + ": " + e);
                }
            });
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) t.join();
        if (!failures.isEmpty()) {
            failures.forEach(System.err::println);
            System.exit(1);
        }
        try (Connection c = connect(); Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT count(*) FROM items")) {
            check(rs.next() && rs.getLong(1) == (long) CLIENTS * ROUNDS, "total");
        }
        System.out.println("pgjdbc " + org.postgresql.util.DriverInfo.DRIVER_VERSION + ": " + CLIENTS + " clients x " + ROUNDS + " rounds ok");
    }
}
