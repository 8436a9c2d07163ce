// The Doctor page is rendered with its report; nothing to do here but exist (base.html loads
// one script per page).
'use strict';
