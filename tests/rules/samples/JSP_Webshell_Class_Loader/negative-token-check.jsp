<%@ page import="java.util.*,javax.crypto.*,javax.crypto.spec.*" %>
<%
    // Single sign-on callback: decrypt and verify the token the IdP sent.
    String token = request.getParameter("token");
    byte[] key = (byte[]) application.getAttribute("sso.key");
    Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
    byte[] raw = Base64.getDecoder().decode(token);
    c.init(Cipher.DECRYPT_MODE, new SecretKeySpec(key, "AES"), new GCMParameterSpec(128, raw, 0, 12));
    String user = new String(c.doFinal(raw, 12, raw.length - 12), "UTF-8");
    session.setAttribute("user", user);
    ClassLoader cl = Thread.currentThread().getContextClassLoader();
    response.sendRedirect(request.getContextPath() + "/home");
%>
