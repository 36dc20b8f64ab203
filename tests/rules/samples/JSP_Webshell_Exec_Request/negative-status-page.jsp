<%@ page contentType="text/html; charset=UTF-8" import="java.io.*,java.net.*" %>
<%
    String name = request.getParameter("name");
    Runtime rt = Runtime.getRuntime();
    long used = rt.totalMemory() - rt.freeMemory();
    int cpus = rt.availableProcessors();
    URL health = new URL("http://127.0.0.1:8081/health");
    HttpURLConnection conn = (HttpURLConnection) health.openConnection();
    BufferedReader r = new BufferedReader(new InputStreamReader(conn.getInputStream()));
%>
<h1>Status for <%= org.owasp.encoder.Encode.forHtml(name) %></h1>
<p>Memory used: <%= used / 1048576 %> MB on <%= cpus %> CPUs</p>
<p>Backend: <%= r.readLine() %></p>
