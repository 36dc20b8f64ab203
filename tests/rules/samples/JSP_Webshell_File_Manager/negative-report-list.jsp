<%@ page import="java.io.*" %>
<%
    // Lists the nightly reports and caches the listing; no command execution.
    File dir = new File(application.getRealPath("/WEB-INF/reports"));
    String sort = request.getParameter("sort");
    File[] files = dir.listFiles((d, n) -> n.endsWith(".pdf"));
    try (FileOutputStream cache = new FileOutputStream(new File(dir, ".listing"))) {
        for (File f : files) {
            cache.write((f.getName() + "\n").getBytes("UTF-8"));
        }
    }
    String os = System.getProperty("os.name");
    for (File f : files) {
%>
    <li><a href="download?name=<%= java.net.URLEncoder.encode(f.getName(), "UTF-8") %>"><%= f.getName() %></a></li>
<%  } %>
