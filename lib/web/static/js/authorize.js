// The SMART authorization request as a form POST (Epic recommends POST: JWT launch tokens plus state can
// overflow a URL). Submits the form at once; without JavaScript the page shows its Continue button.
document.getElementById("authorize").submit();
